"""Training: the job handlers behind the ``sft`` and ``dpo`` job kinds (LoRA or full fine-tuning).

Runs inside a job's child process (``stratum.jobs``). Needs torch, transformers and peft
(``pip install 'stratum[train]'``), imported only when a job runs; ``config`` is cheap to import so
the gateway can validate a job at submit time.
"""
