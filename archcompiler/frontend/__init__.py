"""The front-end: YAML text -> positioned document -> structural (JSON Schema) check.

`loader` reads text into plain data with the position of every key and value; `schema`
checks a document's structure against the schema generated from the block registry.
Neither knows about graphs: `archcompiler.driver` runs the whole pipeline.
"""
