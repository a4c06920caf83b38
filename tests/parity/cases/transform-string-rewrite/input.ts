log(a, b, c);
log(x);
log('lit', y);
