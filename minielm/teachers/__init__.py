"""Teacher fine-tuning: the rewriter teacher and the LM relevance teacher, on the DeepSpeed core.

``rewriter.train_rewriter_teacher`` and ``relevance.train_relevance_teacher`` are the stage
functions (configs in ``config``); the KFP components, the CLI and the demo call them. Importing
this package imports neither torch nor DeepSpeed.
"""
