f(a,);
f(a);
f(a /* c */,);
