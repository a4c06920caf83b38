call(a, b);
call(a, /* note */ b);
call(
  a, // first
  b,
);
