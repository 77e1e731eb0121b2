"""feedctl: the operator CLI of feedline (one module per noun)."""
