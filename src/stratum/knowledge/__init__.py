"""Knowledge: the grounded answering modes — knowledge bases (RAG) and database QA (``sql/``).

tables.py      kb_bases, kb_documents, kb_chunks (migration 0008)
schemas.py     KbSettings, KbCreate/KbUpdate/KbPublic, SearchRequest/ChunkHit, IngestProgress
extract.py     text per file format → blocks; ocr.py: Tesseract for scanned files (optional)
chunking.py    blocks → chunks (headings, sentences, tables, overlap); text.py: tokens
index.py       VectorIndex: exact, faiss HNSW, Milvus; retrieval.py: BM25 + dense + RRF + MMR
service.py     KnowledgeService: KBs, resumable ingest, search
answer.py      grounded prompts, citations, refusals, extractive answers
evaluation.py  hit@k, MRR, answer recall; archive.py: export/import
sql/           LLM + database QA: connections, the SQL guard, read-only execution
"""
