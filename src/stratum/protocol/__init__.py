"""OpenAI wire types, one module per endpoint on a shared base. Imports nothing else of ours."""
