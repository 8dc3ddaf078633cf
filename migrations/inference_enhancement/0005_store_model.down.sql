DROP TABLE store_model;
