if (a == null) {}
if (b.c == null && d) {}
if (e != null) {}
