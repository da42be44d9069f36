"""The score folder's figures (`figures`: paper Figs. 6-9, precision-recall) and its
self-contained HTML page (`html`)."""
