t('hello');
t("a");
t('');
t(name);
