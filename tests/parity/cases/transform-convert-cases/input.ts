key(HTTPServerError);
key(fooBar);
key(foo_bar_baz);
key(a1B2c);
key(already);
key(XMLHttpRequest2);
key(__private_X);
