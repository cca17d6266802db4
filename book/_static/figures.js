// Each figure's image links to its file at full resolution (book/_config.yml: html_js_files):
// the page shows a figure scaled to the content column, a click opens its own pixels.
document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('figure img').forEach(img => {
    if (img.closest('a')) return;
    const link = document.createElement('a');
    link.href = img.getAttribute('src');
    link.className = 'figure-full';
    link.title = 'Open the figure at full resolution';
    img.parentNode.insertBefore(link, img);
    link.appendChild(img);
  });
});
