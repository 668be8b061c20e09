// The filters: which cases show, a count, a line that says the filter on paper, and the
// miss and error counts of a suite's table as shortcuts to its cases.
(() => {
  const cases = Array.from(document.querySelectorAll('article.case'));
  const controls = Array.from(document.querySelectorAll('[data-filter]'));
  const get = name => document.querySelector(`[data-filter="${name}"]`);
  function apply() {
    const want = Object.fromEntries(controls.map(c => [c.dataset.filter, c.value.trim()]));
    const text = want.text.toLowerCase();
    let shown = 0;
    for (const c of cases) {
      const d = c.dataset;
      const outcome = want.outcome === 'problems' ? d.outcome !== 'pass'
        : !want.outcome || d.outcome === want.outcome;
      const ok = outcome && (!want.model || d.model === want.model)
        && (!want.suite || d.suite === want.suite)
        && (!want.field || JSON.parse(d.wrong).includes(want.field))
        && (!text || d.text.includes(text));
      c.hidden = !ok;
      if (ok) shown += 1;
    }
    document.getElementById('shown').textContent = `${shown} of ${cases.length} shown`;
    const said = controls.filter(c => c.value.trim()).map(c => {
      // An option's count is of all cases, not of those shown: left off here.
      const label = c.tagName === 'SELECT'
        ? c.selectedOptions[0].textContent.replace(/ \(\d+\)$/, '') : c.value;
      return `${c.dataset.filter}: ${label}`;
    });
    document.getElementById('printed-filter').textContent =
      `Cases shown: ${shown} of ${cases.length}` + (said.length ? ` (${said.join(', ')})` : '');
  }
  controls.forEach(c => c.addEventListener('input', apply));
  document.querySelectorAll('.more-toggle').forEach(b => b.addEventListener('click', () => {
    const more = b.nextElementSibling;
    more.hidden = !more.hidden;
  }));
  document.getElementById('expand').addEventListener('click', e => {
    const open = e.target.textContent === 'expand all';
    cases.forEach(c => { c.querySelector('.more').hidden = !open; });
    e.target.textContent = open ? 'collapse all' : 'expand all';
  });
  document.querySelectorAll('[data-show-model]').forEach(a => a.addEventListener('click', () => {
    get('model').value = a.dataset.showModel;
    get('suite').value = a.dataset.showSuite;
    get('outcome').value = a.dataset.showOutcome;
    get('field').value = '';
    get('text').value = '';
    apply();
  }));
  apply();
})();
