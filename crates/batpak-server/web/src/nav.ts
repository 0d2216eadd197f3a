// Moving between pages without a page load.

let renderer: () => void = () => {};

export function onNavigate(render: () => void): void {
  renderer = render;
}

export function navigate(path: string): void {
  history.pushState(null, "", path);
  renderer();
}
