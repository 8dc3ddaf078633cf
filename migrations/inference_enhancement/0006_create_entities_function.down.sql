DROP FUNCTION create_entities(int, text[], text[], text[], text[], text[], text, text, text[], text[], text[], text[], text[], text, int);
