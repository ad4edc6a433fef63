import sys
from pathlib import Path

# the bpnet-lite reference module sits beside the tests
sys.path.insert(0, str(Path(__file__).parent))
