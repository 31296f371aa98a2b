"""KServe model servers for MiniELM: rewriter, relevance scorer and the rewrite->search pipeline.

kserve parses ``sys.argv`` when it is first imported (its ModelServer defaults come from argparse);
import it here with a clean argv so that ``minielm serve --...`` or pytest options never reach it.
"""

import sys

_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    import kserve  # noqa: F401
finally:
    sys.argv = _argv
