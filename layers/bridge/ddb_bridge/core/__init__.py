"""Building blocks every capability shares: codec, keys, versions, changes, errors, clients, parking, batch plumbing."""
