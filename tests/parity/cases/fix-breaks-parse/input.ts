t('hello');
t(`x`);
