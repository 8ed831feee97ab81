"""Generic configuration machinery: key registry, sources with origins, typed reading, URL parts."""
