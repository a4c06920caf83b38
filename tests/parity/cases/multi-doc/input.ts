var a = b == c;
if (x == 1) {}
