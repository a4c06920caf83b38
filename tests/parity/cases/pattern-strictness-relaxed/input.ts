call(a, b);
call(a, /* note */ b);
call(
  a, // first
  b,
);
call(b, a);
