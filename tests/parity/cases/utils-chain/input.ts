get('http://a');
get('ftp://b');
const u = 'http://c';
post(x, "https://d");
