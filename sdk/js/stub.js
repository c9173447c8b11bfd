// The stub snippet (README "Browser SDK"): paste it inline before the async script tag. It defines
// window.footprint with every method, queueing calls until footprint.js has loaded the module (and nothing else:
// no global but window.footprint).
(f=>"track page identify alias group reset flush consent".split(" ").map(m=>f[m]=f[m]||function(){f.q.push([m,arguments])}))(window.footprint=window.footprint||{q:[]});
