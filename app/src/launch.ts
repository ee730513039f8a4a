// /app/launch.html: the EHR launch (SMART App Launch 2.2 §"Launch App: EHR Launch"). The EHR
// opens it with ?iss=<PixelHub's FHIR base>&launch=<id from POST /auth/launch>; the app checks
// the iss and goes to PixelHub's authorization endpoint (PKCE S256), which sends the browser
// back to /app/.

import { AppError, loadConfig } from "./config";
import { ehrLaunch } from "./smart";
import "./styles.css";

function show(error: AppError): void {
  const root = document.getElementById("app")!;
  const main = document.createElement("main");
  main.className = "screen error";
  main.id = "main";
  main.dataset.screen = `error-${error.kind}`;
  const h1 = document.createElement("h1");
  h1.textContent = "This launch cannot be used";
  h1.tabIndex = -1;
  const p = document.createElement("p");
  p.setAttribute("role", "alert");
  p.textContent = error.message;
  main.append(h1, p);
  if (error.detail.length) {
    const ul = document.createElement("ul");
    ul.className = "detail";
    for (const d of error.detail) {
      const li = document.createElement("li");
      li.textContent = d;
      ul.append(li);
    }
    main.append(ul);
  }
  root.replaceChildren(main);
  h1.focus();
}

loadConfig()
  .then(ehrLaunch)
  .catch((e: unknown) =>
    show(e instanceof AppError ? e : new AppError("launch", "The launch failed.", [String((e as Error)?.message ?? e)])),
  );
