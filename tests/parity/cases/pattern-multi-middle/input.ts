swap(1);
swap(1, 2);
swap(a, b, c, d);
