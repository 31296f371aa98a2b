"""Models: the rewriter and relevance teachers and students, behind the protocols in ``interfaces``."""
