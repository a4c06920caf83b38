emit(last);
emit(a, last);
emit(a, b, c, last);
emit(a, last, b);
