"""Everything a notebook displays: text tables and banners, the live monitor panel, image-build progress."""
