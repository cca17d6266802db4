// Each figure's image links to its file at full resolution (book/_config.yml: html_js_files):
// the page shows a figure scaled to the content column, a click opens its own pixels. Under a
// chapter's figure, a line links that PNG and the figure's row on the "How to cite" page, which
// has its PDF, its PNG as saved under results/ and its BibTeX.
document.addEventListener('DOMContentLoaded', () => {
  const root = document.documentElement.dataset.content_root || '';
  const chapter = /\/notebooks\/[^/]+\.html$/.test(window.location.pathname);
  document.querySelectorAll('figure img').forEach(img => {
    if (img.closest('a')) return;
    const link = document.createElement('a');
    link.href = img.getAttribute('src');
    link.className = 'figure-full';
    link.title = 'Open the figure at full resolution';
    img.parentNode.insertBefore(link, img);
    link.appendChild(img);
    const figure = img.closest('figure');
    const caption = figure && figure.querySelector('figcaption');
    if (chapter && figure.id && caption && !caption.querySelector('.figure-files')) {
      const files = document.createElement('span');
      files.className = 'figure-files';
      files.innerHTML = '<a href="' + img.getAttribute('src') + '">full-size PNG</a> · <a href="' + root +
                        'book/_generated/cite.html#file-' + figure.id + '">PDF and citation</a>';
      caption.appendChild(files);
    }
  });
});
