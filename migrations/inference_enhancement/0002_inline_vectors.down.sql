ALTER TABLE entities RESET (toast_tuple_target);
ALTER TABLE entities ALTER COLUMN embedding SET STORAGE EXTERNAL;
