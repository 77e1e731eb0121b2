"""feedline's shared core: settings, pure feed rules and store adapters.

Used alike by the streaming and batch pipelines, the API and the `feedctl` CLI.
"""

import warnings

# Google's client libraries warn at import time that grpcio < 1.83 lacks post-quantum TLS
# and that Python 3.11 support ends in 2027. Beam 2.61 (pinned by PyFlink 2.2) holds grpcio
# at 1.65 and PyFlink holds Python at 3.11, so every command would print them; they are
# about our pins, not about what the operator ran.
warnings.filterwarnings("ignore", message=r"grpcio < 1\.83", category=FutureWarning)
warnings.filterwarnings("ignore", message=r"You are using a Python version", category=FutureWarning)
