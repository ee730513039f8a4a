"""The edges of PixelHub: protocol channels and storage engines (see DESIGN.md)."""
