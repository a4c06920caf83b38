getElementById('main');
getElementById('side-bar');
getElementById(name);
