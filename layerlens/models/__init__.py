"""Models bundled with layerlens: the tutorial's abc classifier (`abc`) and a
gallery of small models that show what diagrams and checks are for
(`gallery`). The repository's own `examples/` folder holds scripts that use
them."""
