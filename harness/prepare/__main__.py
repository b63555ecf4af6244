"""``python -m harness.prepare``: one prepare request on stdin, one versioned JSON result on stdout."""
import sys

from harness.prepare.child import prepare
from harness.protocol import serve

sys.exit(serve(prepare))
