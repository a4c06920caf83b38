label('héllo wörld');
label('日本語のテキスト');
label('ab');
