tag('straßeNeu');
tag('ﬁne');
tag('ŉa');
