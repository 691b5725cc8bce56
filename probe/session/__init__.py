"""The on-disk session: format, writer, reader and meta. The only code that knows the format."""
