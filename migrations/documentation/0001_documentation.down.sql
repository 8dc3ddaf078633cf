DROP TABLE generated;
DROP TABLE endpoints;
DROP TABLE specs;
DROP TABLE jobs;
DROP TABLE chunks;
DROP TABLE documents;
DROP TABLE versions;
DROP TABLE projects;
