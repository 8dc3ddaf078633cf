"""inference_enhancement: a knowledge graph in PostgreSQL that enriches prompts.

A drop-in for the reference ``@modelcontextprotocol/server-memory`` (same nine tools, argument and
result shapes) that is safe under concurrent processes, searches by meaning and keywords as well as
substrings, and adds graph retrieval, prompt enrichment, provenance and as-of-time queries.
"""
