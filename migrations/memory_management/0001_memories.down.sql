DROP TABLE memory_history;
DROP TABLE memories;
