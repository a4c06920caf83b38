env('API-KEY');
env('HOST');
env('a-b-c');
