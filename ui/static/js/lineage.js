export async function lineagePage(view) {
  view.appendChild(document.createTextNode('lineage'));
}
