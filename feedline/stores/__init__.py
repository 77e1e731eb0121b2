"""feedline/stores."""
