// The stub snippet (README "Browser SDK"): paste it inline before the async script tag. It defines
// window.footprint with every method, queueing calls until footprint.js has loaded the module.
window.footprint = window.footprint || { q: [] };
["track", "page", "identify", "alias", "group", "reset", "flush", "consent"].forEach(function (m) {
  footprint[m] =
    footprint[m] ||
    function () {
      footprint.q.push([m, arguments]);
    };
});
