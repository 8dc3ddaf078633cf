DROP TABLE mirror_files;
