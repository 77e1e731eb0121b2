"""feedctl: the operator CLI of feedline (one module per noun)."""

import warnings

# google-auth / api-core deprecation notices fire at import time; they are not the
# operator's concern. Set before any noun module imports the Google libraries.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")
