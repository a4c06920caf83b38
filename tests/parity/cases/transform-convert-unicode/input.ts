tag('éclairAuChocolat');
tag('ÖlPreis');
tag('ÆsirΣigma');
