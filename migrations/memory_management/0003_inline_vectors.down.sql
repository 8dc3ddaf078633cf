ALTER TABLE memories RESET (toast_tuple_target);
ALTER TABLE memories ALTER COLUMN embedding SET STORAGE EXTERNAL;
