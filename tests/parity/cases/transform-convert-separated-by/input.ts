label('first-name');
label('user.id value');
label('path/to_file');
label('fooBar-baz qux');
label('HTMLParser_v2');
