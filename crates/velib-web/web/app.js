// velib-web's page: one circle per station, updated from the server's event stream.
//
// Station text (names, addresses, contracts, feed lines) comes from the bike-share feeds, so it
// is only ever put into the page with textContent or as an attribute value, never as HTML.
'use strict';

(function () {
  const FEED_MAX = 50;
  const SPARK_W = 200;
  const SPARK_H = 36;

  // key -> { data: station as the server sends it, marker: L.CircleMarker or null }
  const stations = new Map();
  const contracts = new Set();
  let chosen = '';
  // Whether only the stations the monitor judges locked are shown (the filter).
  let lockedOnly = false;
  // Whether the circles are coloured by e-bikes rather than by all bikes (the switch).
  let byEbikes = false;
  let fitted = false;
  let age = null; // { ms: data age when received, at: Date.now() then }
  let offMap = 0;

  const map = L.map('map', { zoomSnap: 0.25 }).setView([46.6, 2.4], 6);
  const layer = L.layerGroup().addTo(map);

  fetch('/api/config')
    .then((r) => r.json())
    .then((config) => {
      if (config.tiles) {
        L.tileLayer(config.tiles.url, {
          attribution: config.tiles.attribution,
          maxZoom: 19,
        }).addTo(map);
      }
    })
    .catch(() => {
      // Without a base map the stations still draw.
    });

  const $ = (id) => document.getElementById(id);
  const el = (tag, text, className) => {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  };

  // --- Colours ------------------------------------------------------------------------------

  // The count a circle is coloured by: all bikes, or e-bikes with the switch on. `null` when
  // the station's feed does not count bikes by type: not known, which is not 0.
  function count(s, ebikes) {
    return ebikes ? s.ebikes : s.bikes;
  }

  function state(s, ebikes = byEbikes) {
    if (!s.open) return 'closed';
    const n = count(s, ebikes);
    if (n === null || n === undefined) return 'unknown';
    if (n === 0) return 'empty';
    if (s.stands === 0) return 'full';
    return 'ok';
  }

  // Few bikes (orange) to many (green), through yellow.
  const RAMP = [[253, 174, 97], [230, 225, 80], [26, 150, 65]];
  function ramp(t) {
    const x = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(x));
    const f = x - i;
    const c = RAMP[i].map((v, k) => Math.round(v + (RAMP[i + 1][k] - v) * f));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  // Every style names dashArray, so a circle leaving the 'unknown' state loses its dashes.
  function style(s) {
    return Object.assign({ dashArray: null }, shape(s));
  }

  function shape(s) {
    const radius = Math.min(16, 3 + Math.sqrt(Math.max(0, s.capacity)) * 1.3);
    switch (state(s)) {
      case 'closed':
        return { radius, color: '#616161', weight: 1, fillColor: '#9e9e9e', fillOpacity: 0.6 };
      case 'empty':
        return { radius, color: '#7f0000', weight: 2.5, fillColor: '#d7191c', fillOpacity: 0.9 };
      case 'full':
        return { radius, color: '#08306b', weight: 2.5, fillColor: '#2b83ba', fillOpacity: 0.9 };
      case 'unknown':
        return { radius, color: '#616161', weight: 1.5, dashArray: '3 3', fillColor: '#ffffff', fillOpacity: 0.7 };
      default:
        return {
          radius,
          color: '#333',
          weight: 1,
          fillColor: ramp(count(s, byEbikes) / Math.max(1, s.capacity)),
          fillOpacity: 0.85,
        };
    }
  }

  // --- Popup --------------------------------------------------------------------------------

  function ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return new Date(ms).toLocaleString();
  }

  function sparkline(s) {
    const points = s.history;
    if (points.length < 2) return el('div', 'no change seen yet', 'nohistory');
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('width', SPARK_W);
    svg.setAttribute('height', SPARK_H);
    svg.setAttribute('class', 'sparkline');
    const top = Math.max(1, s.capacity, ...points.map((p) => p[1]));
    const coords = points.map((p, i) => {
      const x = (i / (points.length - 1)) * (SPARK_W - 2) + 1;
      const y = SPARK_H - 1 - (p[1] / top) * (SPARK_H - 2);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', coords.join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', '#1f3a5f');
    line.setAttribute('stroke-width', '1.5');
    svg.appendChild(line);
    const title = document.createElementNS(ns, 'title');
    title.textContent = `bikes, last ${points.length} changes: ${points.map((p) => p[1]).join(' ')}`;
    svg.appendChild(title);
    return svg;
  }

  // The last 24 hours from the monitor's hourly statistics: mean bikes, rentals and returns
  // per window, one polyline each, scaled to the largest value.
  function dayChart(windows) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('width', SPARK_W);
    svg.setAttribute('height', SPARK_H * 2);
    svg.setAttribute('class', 'daychart');
    const series = [
      ['bikes', '#1f3a5f', windows.map((w) => w.bikes.mean)],
      ['rentals', '#c0392b', windows.map((w) => w.rentals)],
      ['returns', '#27ae60', windows.map((w) => w.returns)],
    ];
    const top = Math.max(1, ...series.flatMap((x) => x[2]));
    const h = SPARK_H * 2;
    for (const [name, colour, values] of series) {
      const coords = values.map((v, i) => {
        const x = (i / Math.max(1, values.length - 1)) * (SPARK_W - 2) + 1;
        const y = h - 1 - (v / top) * (h - 2);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      const line = document.createElementNS(ns, 'polyline');
      line.setAttribute('points', coords.join(' '));
      line.setAttribute('fill', 'none');
      line.setAttribute('stroke', colour);
      line.setAttribute('stroke-width', '1.5');
      line.dataset.series = name;
      svg.appendChild(line);
    }
    const title = document.createElementNS(ns, 'title');
    title.textContent = `last 24 h, ${windows.length} hourly windows: bikes (blue), rentals (red), returns (green)`;
    svg.appendChild(title);
    return svg;
  }

  // Fills the popup's history part from the history endpoint, once the popup is built.
  function loadHistory(key, box) {
    fetch(`/api/stations/${encodeURIComponent(key)}/history`)
      .then((r) => (r.ok ? r.json() : null))
      .then((h) => {
        box.textContent = '';
        if (!h || h.windows.length === 0) {
          box.appendChild(el('div', 'no hourly statistics', 'nohistory'));
          return;
        }
        box.dataset.windows = h.windows.length;
        box.appendChild(el('div', 'last 24 hours: bikes, rentals, returns', 'charttitle'));
        box.appendChild(dayChart(h.windows));
        if (h.last_activity !== null) {
          box.appendChild(el('div', `last activity ${Math.max(0, Math.round((Date.now() - h.last_activity) / 60000))} min ago`, 'activity'));
        }
      })
      .catch(() => {
        box.textContent = '';
      });
  }

  function popup(s) {
    const root = el('div', undefined, 'popup');
    root.dataset.key = s.key;
    root.appendChild(el('h3', s.name || s.key, 'name'));
    root.appendChild(el('div', s.address, 'address'));
    if (s.health === 'locked') {
      root.appendChild(el('div', `locked since ${new Date(s.health_since).toLocaleString()}`, 'badge locked'));
    } else if (s.health === 'degraded') {
      const since = new Date(s.health_since).toLocaleString();
      root.appendChild(el('div', `many docks out of service since ${since}`, 'badge degraded'));
    }
    const dl = el('dl');
    const status =
      (s.open ? 'open' : 'closed') +
      (s.returning === false ? ', takes no returns' : '') +
      (s.reported_empty ? ' (reported empty)' : '');
    // A count the feed does not give has no row: it is not known, which is not 0.
    for (const [term, value] of [
      ['contract', s.contract],
      ['bikes', s.bikes],
      ['e-bikes', s.ebikes],
      ['classic bikes', s.classic],
      ['bikes out of service', s.bikes_out_of_service],
      ['free stands', s.stands],
      ['docks out of service', s.docks_out_of_service],
      ['capacity', s.capacity],
      ['status', status],
      ['last change', ago(s.changed_at)],
    ]) {
      if (value === null || value === undefined) continue;
      dl.appendChild(el('dt', term));
      dl.appendChild(el('dd', String(value)));
    }
    root.appendChild(dl);
    root.appendChild(sparkline(s));
    const box = el('div', undefined, 'history');
    root.appendChild(box);
    loadHistory(s.key, box);
    return root;
  }

  // --- Stations -----------------------------------------------------------------------------

  function visible(s) {
    return s.lat !== null && s.lng !== null && (!chosen || s.contract === chosen) && (!lockedOnly || s.health === 'locked');
  }

  // Attributes on the circle's SVG element, for people inspecting the page and for the tests.
  function tag(entry) {
    const node = entry.marker && entry.marker.getElement();
    if (!node) return;
    node.dataset.key = entry.data.key;
    node.dataset.contract = entry.data.contract;
    node.dataset.bikes = entry.data.bikes;
    if (entry.data.ebikes === null || entry.data.ebikes === undefined) delete node.dataset.ebikes;
    else node.dataset.ebikes = entry.data.ebikes;
    node.dataset.stands = entry.data.stands;
    node.dataset.health = entry.data.health || 'ok';
    node.dataset.state = state(entry.data);
  }

  // Colours every circle again, after the switch between bikes and e-bikes.
  function restyle() {
    for (const entry of stations.values()) {
      if (!entry.marker) continue;
      entry.marker.setStyle(style(entry.data));
      tag(entry);
    }
  }

  function show(entry) {
    if (!entry.marker) return;
    const want = visible(entry.data);
    const has = layer.hasLayer(entry.marker);
    if (want && !has) layer.addLayer(entry.marker);
    else if (!want && has) layer.removeLayer(entry.marker);
  }

  function upsert(s) {
    let entry = stations.get(s.key);
    if (!entry) {
      entry = { data: s, marker: null };
      stations.set(s.key, entry);
      addContract(s.contract);
    }
    entry.data = s;
    if (s.lat === null || s.lng === null) {
      if (entry.marker) layer.removeLayer(entry.marker);
      entry.marker = null;
      return;
    }
    if (!entry.marker) {
      const marker = L.circleMarker([s.lat, s.lng], Object.assign({ className: 'station' }, style(s)));
      entry.marker = marker;
      marker.on('add', () => tag(entry));
      marker.bindPopup(() => popup(entry.data), { maxWidth: 300 });
    } else {
      entry.marker.setLatLng([s.lat, s.lng]);
      const st = style(s);
      entry.marker.setStyle(st);
      entry.marker.setRadius(st.radius);
      tag(entry);
      if (entry.marker.isPopupOpen()) entry.marker.setPopupContent(popup(s));
    }
    show(entry);
  }

  function addContract(name) {
    if (contracts.has(name)) return;
    contracts.add(name);
    const select = $('contract');
    const option = el('option', name);
    option.value = name;
    const after = Array.from(select.options).find((o) => o.value && o.value > name);
    select.insertBefore(option, after || null);
  }

  function fit() {
    const bounds = [];
    for (const entry of stations.values()) {
      if (visible(entry.data)) bounds.push([entry.data.lat, entry.data.lng]);
    }
    if (bounds.length) map.fitBounds(bounds, { padding: [20, 20], maxZoom: 16 });
  }

  // The first time stations arrive, the view moves to them before their circles are drawn:
  // moving afterwards would project every circle twice, which thousands of them make slow.
  function fitFirst(list) {
    if (fitted) return;
    const bounds = list.filter((s) => s.lat !== null && s.lng !== null).map((s) => [s.lat, s.lng]);
    if (!bounds.length) return;
    fitted = true;
    map.fitBounds(bounds, { padding: [20, 20], maxZoom: 16, animate: false });
  }

  // --- Totals and feed ----------------------------------------------------------------------

  // Totals count bikes whatever the switch says; e-bikes are summed over the stations whose
  // feed counts them, and shown as '–' for a contract where none does.
  function renderTotals() {
    const rows = new Map();
    const zero = () => ({ stations: 0, bikes: 0, ebikes: null, stands: 0, empty: 0, full: 0 });
    const all = zero();
    for (const { data: s } of stations.values()) {
      let t = rows.get(s.contract);
      if (!t) rows.set(s.contract, (t = zero()));
      for (const target of [t, all]) {
        target.stations += 1;
        target.bikes += s.bikes;
        if (s.ebikes !== null && s.ebikes !== undefined) target.ebikes = (target.ebikes || 0) + s.ebikes;
        target.stands += s.stands;
        const st = state(s, false);
        if (st === 'empty') target.empty += 1;
        if (st === 'full') target.full += 1;
      }
    }
    const body = $('totals').tBodies[0];
    const fresh = document.createDocumentFragment();
    const names = Array.from(rows.keys()).sort();
    const line = (name, t, className) => {
      const tr = el('tr', undefined, className);
      tr.dataset.contract = name;
      tr.appendChild(el('td', name));
      const ebikes = t.ebikes === null ? '–' : t.ebikes;
      for (const v of [t.stations, t.bikes, ebikes, t.stands, t.empty, t.full]) tr.appendChild(el('td', String(v)));
      fresh.appendChild(tr);
    };
    for (const name of names) line(name, rows.get(name), name === chosen ? 'chosen' : '');
    if (names.length > 1) line('all', all, chosen ? '' : 'chosen');
    body.replaceChildren(fresh);
  }

  function feedLine(line) {
    const li = el('li');
    li.dataset.contract = line.contract;
    li.dataset.key = line.key;
    li.className = line.text.startsWith('+') ? 'up' : line.text.startsWith('-') ? 'down' : 'event';
    const time = el('time', new Date(line.at).toLocaleTimeString());
    time.dateTime = new Date(line.at).toISOString();
    li.appendChild(time);
    li.appendChild(el('span', line.text, 'text'));
    li.hidden = Boolean(chosen) && line.contract !== chosen;
    return li;
  }

  function addFeed(lines, replace) {
    const list = $('feed');
    if (replace) list.replaceChildren();
    for (const line of lines) list.insertBefore(feedLine(line), list.firstChild);
    while (list.children.length > FEED_MAX) list.removeChild(list.lastChild);
  }

  // --- Status -------------------------------------------------------------------------------

  function renderStatus(message) {
    offMap = message.off_map;
    const off = $('offmap');
    off.hidden = offMap === 0;
    off.textContent = `${offMap} station${offMap === 1 ? '' : 's'} without valid coordinates (not on the map)`;
    age = message.age_ms === null ? null : { ms: message.age_ms, at: Date.now() };
    renderAge();
  }

  function renderAge() {
    const node = $('age');
    if (!age) {
      node.textContent = 'no data yet';
      return;
    }
    const s = Math.round((age.ms + Date.now() - age.at) / 1000);
    node.textContent = s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
  }
  setInterval(renderAge, 1000);

  function setConnection(state, text) {
    const node = $('connection');
    node.dataset.state = state;
    node.textContent = text;
  }

  // --- Event stream -------------------------------------------------------------------------

  function onSnapshot(message) {
    const keep = new Set(message.stations.map((s) => s.key));
    for (const [key, entry] of stations) {
      if (!keep.has(key)) {
        if (entry.marker) layer.removeLayer(entry.marker);
        stations.delete(key);
      }
    }
    fitFirst(message.stations);
    for (const s of message.stations) upsert(s);
    addFeed(message.feed, true);
    renderTotals();
    renderStatus(message);
    document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
  }

  function onUpdate(message) {
    fitFirst(message.stations);
    for (const s of message.stations) upsert(s);
    addFeed(message.feed, false);
    if (message.stations.length) renderTotals();
    renderStatus(message);
  }

  function connect() {
    const source = new EventSource('/api/events');
    source.addEventListener('open', () => setConnection('live', 'live'));
    source.addEventListener('snapshot', (e) => onSnapshot(JSON.parse(e.data)));
    source.addEventListener('update', (e) => onUpdate(JSON.parse(e.data)));
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (for example on an error status): start again ourselves.
        setConnection('reconnecting', 'reconnecting…');
        setTimeout(connect, 2000);
      } else {
        setConnection('reconnecting', 'reconnecting…');
      }
    });
  }

  $('by-ebikes').addEventListener('change', (e) => {
    byEbikes = e.target.checked;
    document.body.dataset.colour = byEbikes ? 'ebikes' : 'bikes';
    restyle();
  });

  $('locked-only').addEventListener('change', (e) => {
    lockedOnly = e.target.checked;
    for (const entry of stations.values()) show(entry);
  });

  $('contract').addEventListener('change', (e) => {
    chosen = e.target.value;
    for (const entry of stations.values()) show(entry);
    for (const li of $('feed').children) li.hidden = Boolean(chosen) && li.dataset.contract !== chosen;
    renderTotals();
    fit();
  });

  connect();
})();
