"""The way in: drafts from the pollers are batched, signed and spooled in one transaction."""
