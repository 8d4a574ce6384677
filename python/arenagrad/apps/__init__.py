"""Applications built on the library: the command line (`cli`), micrograd's moons demo
(`demo`) and the digits trainer (`digits`). The library itself never imports them."""
